"""The `wheelwell` client commands: talk to a wheelwell server and point pip and uv at it."""
