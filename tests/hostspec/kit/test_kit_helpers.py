"""The helpers provider authors use instead of copying code: paging, answers to errors, retries,
OAuth2 client credentials. HTTP is faked with ``responses``; sleeping and clocks are injected."""
from __future__ import annotations

import base64
import email.utils
import itertools
import time
from urllib.parse import parse_qs

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from hostspec import (
    ExpectedCount,
    ListingTotal,
    PageEnd,
    ProviderConfigError,
    ProviderSystemError,
    ProviderTransientError,
)
from hostspec.kit.http import ClientCredentials, RetryableAnswer, raise_for_answer
from hostspec.kit.retry import retry_policy
from hostspec.kit.paging import cursor_pages, next_link_pages, offset_pages

# -- paging -----------------------------------------------------------------------------------------
API = "https://acme.udemy.com/api-2.0/organizations/7/courses/list/"


def linked(n: int, size: int = 2, *, count: bool = True, elsewhere: str | None = None):
    """Pages of ``n`` items with absolute ``next`` links (page numbers); ``elsewhere``: the
    second page's next link."""
    calls = []

    def fetch(url):
        calls.append(url)
        page = int(parse_qs(url.partition("?")[2]).get("page", ["1"])[0])
        items = list(range((page - 1) * size, min(page * size, n)))
        nxt = f"{API}?page={page + 1}" if page * size < n else None
        if elsewhere and page == 2:
            nxt = elsewhere
        return {"results": items, "next": nxt, **({"count": n} if count else {})}

    return fetch, calls


def test_next_link_pages_follow_absolute_links_and_yield_the_listing_total():
    fetch, calls = linked(5)
    out = list(next_link_pages(fetch, API))
    assert out == [ExpectedCount(5), 0, 1, PageEnd(f"{API}?page=2"), 2, 3, PageEnd(f"{API}?page=3"), 4,
                   ListingTotal(5)]
    assert calls == [API, f"{API}?page=2", f"{API}?page=3"]
    resumed = list(next_link_pages(fetch, API, start=f"{API}?page=3"))
    assert resumed == [ExpectedCount(5), 4, ListingTotal(5)]


def test_next_link_pages_without_a_count_yield_no_total():
    fetch, _ = linked(3, count=False)
    assert list(next_link_pages(fetch, API)) == [0, 1, PageEnd(f"{API}?page=2"), 2]


@pytest.mark.parametrize("elsewhere", ["http://acme.udemy.com/api-2.0/x?page=3",          # another scheme
                                       "https://evil.example.com/api-2.0/x?page=3",        # another host
                                       "https://acme.udemy.com:8443/api-2.0/x?page=3",     # another port
                                       "https://acme.udemy.com/other/x?page=3",            # another path root
                                       "https://acme.udemy.com/api-2.0evil/x?page=3"])
def test_next_link_pages_refuse_a_link_elsewhere(elsewhere):
    fetch, calls = linked(9, elsewhere=elsewhere)
    with pytest.raises(ProviderSystemError, match="leads elsewhere"):
        list(next_link_pages(fetch, API))
    assert elsewhere not in calls
    with pytest.raises(ProviderSystemError, match="leads elsewhere"):
        list(next_link_pages(fetch, API, start=elsewhere))


def test_next_link_pages_stop_a_loop():
    with pytest.raises(ProviderSystemError, match="itself"):
        list(next_link_pages(lambda url: {"results": [1], "next": API}, API))


def test_cursor_pages_yield_the_total_a_page_states():
    pages = {None: ([1, 2], "b", 3), "b": ([3], None, 3)}
    assert list(cursor_pages(lambda c: pages[c])) == [1, 2, PageEnd("b"), 3, ListingTotal(3)]
    assert ListingTotal(3) not in list(cursor_pages(lambda c: {None: ([1], None, None)}[c]))



class Pages:
    """A listing of ``n`` items served ``limit`` at a time; records the calls."""

    def __init__(self, n, *, total=True, items_key="items", cap=None):
        self.n, self.total, self.items_key, self.cap, self.calls = n, total, items_key, cap, []

    def __call__(self, offset, limit):
        self.calls.append((offset, limit))
        served = list(range(offset, min(self.n, offset + min(limit, self.cap or limit))))
        page = {self.items_key: served}
        if self.total:
            page["total"] = self.n
        return page


def test_offset_pages_with_a_total():
    pages = Pages(7)
    out = list(offset_pages(pages, page_size=3))
    assert out == [ExpectedCount(7), 0, 1, 2, PageEnd(3), 3, 4, 5, PageEnd(6), 6, ListingTotal(7)]
    assert pages.calls == [(0, 3), (3, 3), (6, 3)]


def test_offset_pages_stop_at_the_total_without_asking_for_an_empty_page():
    pages = Pages(6)
    out = list(offset_pages(pages, page_size=3))
    assert out == [ExpectedCount(6), 0, 1, 2, PageEnd(3), 3, 4, 5, ListingTotal(6)]
    assert pages.calls == [(0, 3), (3, 3)]


def test_offset_pages_without_a_total_end_at_a_short_page():
    pages = Pages(5, total=False)
    out = list(offset_pages(pages, page_size=2, total=None))
    assert out == [0, 1, PageEnd(2), 2, 3, PageEnd(4), 4]
    assert not any(isinstance(x, ExpectedCount) for x in out)


def test_offset_pages_without_a_total_end_at_an_empty_page():
    pages = Pages(4, total=False)
    out = list(offset_pages(pages, page_size=2))          # total="total" is simply absent
    assert out == [0, 1, PageEnd(2), 2, 3, PageEnd(4)]
    assert pages.calls == [(0, 2), (2, 2), (4, 2)]


def test_offset_pages_state_the_total_once_even_when_every_page_repeats_it():
    out = list(offset_pages(Pages(10), page_size=3))
    assert out.count(ExpectedCount(10)) == 1 and out[0] == ExpectedCount(10)


def test_offset_pages_read_nested_keys():
    def fetch(offset, limit):
        rows = list(range(offset, min(5, offset + limit)))
        return {"elements": rows, "paging": {"start": offset, "count": limit, "total": 5}}

    out = list(offset_pages(fetch, page_size=5, items="elements", total="paging.total"))
    assert out == [ExpectedCount(5), 0, 1, 2, 3, 4, ListingTotal(5)]


@pytest.mark.parametrize("page", [{"data": []}, {"items": None}, {"items": {"a": 1}}, ["not", "a", "mapping"]])
def test_offset_pages_refuse_a_page_without_a_list_of_items(page):
    with pytest.raises(ProviderSystemError) as info:
        list(offset_pages(lambda offset, limit: page, page_size=2))
    assert "'items'" in str(info.value) and not info.value.retryable


def test_offset_pages_resume_from_a_cursor():
    pages = Pages(7)
    out = list(offset_pages(pages, page_size=3, start=3))
    assert out == [ExpectedCount(7), 3, 4, 5, PageEnd(6), 6, ListingTotal(7)]
    assert pages.calls[0] == (3, 3)


def test_cursor_pages():
    book = {None: ([1, 2], "b"), "b": ([3], "c"), "c": ([4, 5], None)}
    seen = []

    def fetch(cursor):
        seen.append(cursor)
        return book[cursor]

    assert list(cursor_pages(fetch)) == [1, 2, PageEnd("b"), 3, PageEnd("c"), 4, 5]
    assert seen == [None, "b", "c"]
    seen.clear()
    assert list(cursor_pages(fetch, start="b")) == [3, PageEnd("c"), 4, 5]
    assert seen == ["b", "c"]


def test_cursor_pages_stop_a_cursor_that_does_not_move():
    with pytest.raises(ProviderSystemError):
        list(itertools.islice(cursor_pages(lambda cursor: ([1], "same"), start="same"), 100))   # bounded if broken


# -- answers ----------------------------------------------------------------------------------------


def answer(status, text="", headers=None):
    resp = requests.Response()
    resp.status_code, resp._content, resp.encoding = status, text.encode(), "utf-8"
    resp.headers.update(headers or {})
    return resp


@pytest.mark.parametrize("status", [200, 204, 301, 304])
def test_successes_pass(status):
    assert raise_for_answer(answer(status), "GET /x") is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 599])
def test_throttling_and_server_errors_are_retryable(status):
    with pytest.raises(RetryableAnswer) as info:
        raise_for_answer(answer(status, "busy", {"Retry-After": "12"}), "GET /x")
    err = info.value
    assert isinstance(err, ProviderTransientError) and err.retryable
    assert err.status == status and err.retry_after == 12.0
    assert str(err) == f"GET /x: HTTP {status}: busy"


def test_retry_after_as_an_http_date_and_absent():
    later = email.utils.formatdate(time.time() + 100, usegmt=True)
    with pytest.raises(RetryableAnswer) as info:
        raise_for_answer(answer(429, headers={"Retry-After": later}), "GET /x")
    assert 95 <= info.value.retry_after <= 101
    with pytest.raises(RetryableAnswer) as info:
        raise_for_answer(answer(503), "GET /x")
    assert info.value.retry_after is None


@pytest.mark.parametrize("status, error", [(401, ProviderConfigError), (403, ProviderConfigError),
                                           (400, ProviderSystemError), (404, ProviderSystemError),
                                           (422, ProviderSystemError)])
def test_client_errors(status, error):
    with pytest.raises(error) as info:
        raise_for_answer(answer(status, '{"message": "no"}'), "GET /x")
    assert type(info.value) is error and not info.value.retryable
    assert str(info.value) == f'GET /x: HTTP {status}: {{"message": "no"}}'


def test_the_body_is_quoted_as_a_bounded_excerpt():
    with pytest.raises(ProviderSystemError) as info:
        raise_for_answer(answer(400, "x" * 50_000), "GET /x")
    assert len(str(info.value)) < 400 and "50000 characters" in str(info.value)


# -- retries ----------------------------------------------------------------------------------------


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def failing(*errors, result="done"):
    """A callable raising ``errors`` in turn, then returning ``result``; counts its calls."""
    queue = list(errors)

    def call():
        call.count += 1
        if queue:
            raise queue.pop(0)
        return result

    call.count = 0
    return call


def test_retry_after_is_honoured_and_capped():
    sleeps = Sleeps()
    call = failing(RetryableAnswer("slow down", status=429, retry_after=7),
                   RetryableAnswer("slow down", status=429, retry_after=3600))
    assert retry_policy(provider="acme", max_retry_after_s=30, sleep=sleeps)(call) == "done"
    assert sleeps == [7.0, 30.0] and call.count == 3


def test_without_retry_after_the_wait_is_a_bounded_backoff():
    sleeps = Sleeps()
    call = failing(*[RetryableAnswer("down", status=503)] * 4)
    assert retry_policy(provider="acme", initial_s=0.5, max_backoff_s=2, sleep=sleeps)(call) == "done"
    assert len(sleeps) == 4 and all(0 <= s <= 2 for s in sleeps)


def test_it_gives_up_after_max_attempts_and_raises_the_last_error():
    sleeps = Sleeps()
    errors = [RetryableAnswer(f"down {n}", status=503) for n in range(5)]
    call = failing(*errors)
    with pytest.raises(RetryableAnswer) as info:
        retry_policy(provider="acme", max_attempts=3, sleep=sleeps)(call)
    assert info.value is errors[2] and call.count == 3 and len(sleeps) == 2


@pytest.mark.parametrize("error", [ProviderConfigError("bad key"), ProviderSystemError("odd"), KeyError("bug")])
def test_errors_that_a_retry_cannot_fix_are_raised_at_once(error):
    sleeps = Sleeps()
    call = failing(error)
    with pytest.raises(type(error)) as info:
        retry_policy(provider="acme", sleep=sleeps)(call)
    assert info.value is error and call.count == 1 and sleeps == []


def test_the_attempt_loop_form_and_retry_on():
    class Flaky(Exception):
        pass

    sleeps, tries = Sleeps(), []
    for attempt in retry_policy(provider="acme", retry_on=(Flaky,), sleep=sleeps):
        with attempt:
            tries.append(1)
            if len(tries) < 3:
                raise Flaky()
    assert len(tries) == 3 and len(sleeps) == 2


def test_retries_are_counted_and_logged(caplog):
    from hostspec.ops import metrics

    def count(name, **labels):
        return metrics.PROVIDER_RETRIES.labels(**labels)._value.get() if name == "retry" else \
            metrics.RATE_LIMIT_WAIT.labels(**labels)._value.get()

    before = count("retry", provider="kit-test", reason="RetryableAnswer"), count("wait", provider="kit-test")
    call = failing(RetryableAnswer("x", status=429, retry_after=4), RetryableAnswer("y", status=500))
    with caplog.at_level("WARNING", "hostspec.kit.http"):
        retry_policy(provider="kit-test", max_backoff_s=1, sleep=Sleeps())(call)
    assert count("retry", provider="kit-test", reason="RetryableAnswer") - before[0] == 2
    assert count("wait", provider="kit-test") - before[1] == 4.0        # only the Retry-After wait
    assert sum("kit-test call failed" in r.getMessage() for r in caplog.records) == 2


# -- client credentials -----------------------------------------------------------------------------

TOKEN_URL = "https://auth.example.test/oauth/token"
SECRET = "s3cret-value-never-shown"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def grant(rsps, token="tok-1", expires_in=600, **kw):
    body = {"access_token": token, "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    rsps.add(responses.POST, TOKEN_URL, json=body, **kw)


def credentials(clock=None, **kw):
    kw.setdefault("provider", "acme")
    return ClientCredentials(requests.Session(), TOKEN_URL, "my-client", lambda: SECRET,
                             clock=clock or Clock(), **kw)


def form(call):
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@responses.activate(registry=OrderedRegistry)
def test_a_token_is_cached_and_renewed_before_it_expires():
    clock = Clock()
    grant(responses, "tok-1", expires_in=600)
    grant(responses, "tok-2", expires_in=600)
    creds = credentials(clock, renew_margin_s=60)
    assert creds.token() == creds.token() == "tok-1"
    clock.now += 539
    assert creds.token() == "tok-1"                 # 600 s minus the 60 s margin not over yet
    clock.now += 1
    assert creds.token() == "tok-2"
    assert len(responses.calls) == 2


@responses.activate(registry=OrderedRegistry)
def test_default_ttl_when_the_answer_states_none():
    clock = Clock()
    grant(responses, "tok-1", expires_in=None)
    grant(responses, "tok-2")
    creds = credentials(clock, default_ttl_s=100, renew_margin_s=10)
    assert creds.token() == "tok-1"
    clock.now += 89
    assert creds.token() == "tok-1"
    clock.now += 1
    assert creds.token() == "tok-2"


@responses.activate(registry=OrderedRegistry)
def test_invalidate_fetches_a_new_token():
    grant(responses, "tok-1")
    grant(responses, "tok-2")
    creds = credentials()
    assert creds.token() == "tok-1"
    creds.invalidate()
    assert creds.token() == "tok-2"
    creds.invalidate("tok-1")                       # refused, but another thread renewed already
    assert creds.token() == "tok-2" and len(responses.calls) == 2


@responses.activate
def test_basic_auth_style():
    grant(responses)
    credentials(scope="read:all").token()
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"my-client:{SECRET}".encode()).decode()
    assert form(responses.calls[0]) == {"grant_type": "client_credentials", "scope": "read:all"}


@responses.activate
def test_body_auth_style():
    grant(responses)
    credentials(auth_style="body", timeout_s=2.5).token()
    request = responses.calls[0].request
    assert "Authorization" not in request.headers
    assert form(responses.calls[0]) == {"grant_type": "client_credentials", "client_id": "my-client",
                                        "client_secret": SECRET}
    assert request.req_kwargs["timeout"] == 2.5


def test_an_unknown_auth_style_is_refused():
    with pytest.raises(ValueError):
        credentials(auth_style="header")


@responses.activate
def test_repr_shows_neither_the_secret_nor_the_token():
    grant(responses, "tok-visible-nowhere")
    creds = credentials()
    creds.token()
    assert SECRET not in repr(creds) and "tok-visible-nowhere" not in repr(creds) and "my-client" in repr(creds)


@pytest.mark.parametrize("status", [400, 401])
@responses.activate
def test_refused_credentials_are_a_config_error_naming_the_client_not_the_secret(status):
    responses.add(responses.POST, TOKEN_URL, status=status, json={"error": "invalid_client", "echo": SECRET})
    with pytest.raises(ProviderConfigError) as info:
        credentials().token()
    assert "my-client" in str(info.value) and SECRET not in str(info.value) and str(status) in str(info.value)


@pytest.mark.parametrize("status, retry_after", [(429, 5.0), (503, None)])
@responses.activate
def test_throttling_at_the_token_endpoint_is_retryable(status, retry_after):
    headers = {"Retry-After": "5"} if retry_after else {}
    responses.add(responses.POST, TOKEN_URL, status=status, body="busy", headers=headers)
    with pytest.raises(RetryableAnswer) as info:
        credentials().token()
    assert info.value.status == status and info.value.retry_after == retry_after
    assert SECRET not in str(info.value)


@responses.activate
def test_network_failures_are_transient():
    responses.add(responses.POST, TOKEN_URL, body=requests.ConnectionError(f"refused {SECRET}"))
    with pytest.raises(ProviderTransientError) as info:
        credentials().token()
    assert SECRET not in str(info.value) and info.value.__cause__ is None


@pytest.mark.parametrize("body", [{"token_type": "Bearer"}, {"access_token": ""}, {"access_token": None}])
@responses.activate
def test_an_answer_without_a_token_is_a_system_error(body):
    responses.add(responses.POST, TOKEN_URL, json=body)
    with pytest.raises(ProviderSystemError):
        credentials().token()


@responses.activate
def test_token_calls_are_counted():
    from hostspec.ops import metrics

    def count(status):
        return metrics.PROVIDER_CALLS.labels("kit-cc", "POST", status)._value.get()

    before = count("200"), count("401")
    grant(responses)
    credentials(provider="kit-cc").token()
    responses.replace(responses.POST, TOKEN_URL, status=401)
    with pytest.raises(ProviderConfigError):
        credentials(provider="kit-cc").token()
    assert (count("200") - before[0], count("401") - before[1]) == (1, 1)


@responses.activate(registry=OrderedRegistry)
def test_client_credentials_and_retry_policy_together():
    responses.add(responses.POST, TOKEN_URL, status=429, headers={"Retry-After": "2"})
    grant(responses, "tok-ok")
    sleeps = Sleeps()
    assert retry_policy(provider="acme", sleep=sleeps)(credentials().token) == "tok-ok"
    assert sleeps == [2.0]


@responses.activate(registry=OrderedRegistry)
def test_a_shared_token_serves_the_next_client_of_the_same_account_only():
    clock = Clock()
    for n in range(1, 4):
        grant(responses, f"tok-{n}", expires_in=600)
    first = credentials(clock, shared=True)
    assert first.token() == "tok-1"
    assert credentials(clock, shared=True).token() == "tok-1"         # the next run: no token call
    assert credentials(clock).token() == "tok-2"                      # not shared: its own
    other = ClientCredentials(requests.Session(), TOKEN_URL, "my-client", lambda: "another-secret",
                              provider="acme", clock=clock, shared=True)
    assert other.token() == "tok-3"                                   # another secret: another account
    first.invalidate("tok-1")                                         # a 401 somewhere: gone for all
    grant(responses, "tok-4", expires_in=600)
    assert credentials(clock, shared=True).token() == "tok-4"
    assert len(responses.calls) == 4


def test_sandbox_epoch_is_relative_to_the_clock():
    from datetime import datetime, timedelta, timezone

    from hostspec.kit.sandboxes import sandbox_epoch

    now = datetime(2026, 12, 7, 19, 30, tzinfo=timezone.utc)
    assert sandbox_epoch(20, now=now) == datetime(2026, 11, 17, 9, 0, tzinfo=timezone.utc)
    last = sandbox_epoch(20, now=now) + timedelta(days=19, hours=6)      # the template's latest activity
    assert now - timedelta(hours=48) <= last <= now
