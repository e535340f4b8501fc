"""The web console (`apprelease console`): every AppRelease a user may see, live, and the
actions RBAC lets them take, each sent to the apiserver as that user."""
