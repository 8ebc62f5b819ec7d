"""Delegation's pure parts: the spawn policy, the harness command table, the task lifecycle.

Nothing here starts a process or touches the network; ``daemon/tasks.py`` does, through these.
The one exception is ``wrapper``, the small program a task runs under (stdlib only).
"""
