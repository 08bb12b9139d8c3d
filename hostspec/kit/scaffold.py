"""``connector-host new-provider NAME``: a provider package from the template in
``hostspec/kit/templates/provider``, ready to pass :mod:`hostspec.kit.testing` out of the box."""
from __future__ import annotations

import re
from pathlib import Path

TEMPLATE = Path(__file__).parent / "templates" / "provider"


class ScaffoldError(ValueError):
    pass


def new_provider(name: str, dest: str | Path = ".", *, title: str | None = None) -> list[Path]:
    """Write the package ``connector-NAME/`` under ``dest``; returns the files written."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,40}", name):
        raise ScaffoldError(f"provider name {name!r}: use lower-case letters, digits and '_' (e.g. udemy_business)")
    root = Path(dest) / f"connector-{name.replace('_', '-')}"
    if root.exists():
        raise ScaffoldError(f"{root} exists already")
    values = {"name": name, "dashed": name.replace("_", "-"), "title": title or name.replace("_", " ").title(),
              "class_name": "".join(part.title() for part in name.split("_"))}
    written = []
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).with_suffix("")
        target = root / Path(*(part.replace("__name__", name) for part in relative.parts))
        text = source.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return [root / "pyproject.toml", *[p for p in written if p.name != "pyproject.toml"]]
