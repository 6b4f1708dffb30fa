"""``python -m flipout_repro.cli ARGS`` is ``flipout-train ARGS``."""
from flipout_repro.cli.train import main

if __name__ == "__main__":
    main()
