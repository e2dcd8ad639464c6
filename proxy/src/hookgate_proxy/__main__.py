"""Allow `python -m hookgate_proxy`, the same as the `hookgate` command."""

from hookgate_proxy.cli import main

raise SystemExit(main())
