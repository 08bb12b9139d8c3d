"""The control plane: the admin API, its tokens, roles, rate and audit trail, its OpenAPI
document, and re-drive."""
