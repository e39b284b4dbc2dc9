import sys

try:
    from strum.cli import main
except KeyboardInterrupt:           # Ctrl-C before strum.cli's own guard runs
    sys.stderr.write("strum: interrupted while starting; nothing was written\n")
    sys.stderr.flush()
    import os
    os._exit(130)

sys.exit(main())
