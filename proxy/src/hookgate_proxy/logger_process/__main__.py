"""Entry point of the logger process: `python -m hookgate_proxy.logger_process FD LEVEL`."""

import sys

from hookgate_proxy.logger_process.worker import main

sys.exit(main())
