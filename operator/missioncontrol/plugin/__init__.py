"""`kubectl mc`: the kubectl plugin the on-call engineer drives incidents with.

  view.py    what people read: the board (`get`), an incident at a glance (`describe`)
  edits.py   what people write: acknowledgements appended, action items, pauses (patches)
  api.py     the cluster: kubeconfig, context and identity, every call with a deadline
  main.py    the command line (installed as the executable `kubectl-mc`)

view and edits are pure (the incident and `now` in, text or a patch out); api is the I/O."""
