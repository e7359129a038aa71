"""``python -m pipeline`` = the ``pipeline`` console script."""
from pipeline.cli import main

if __name__ == "__main__":
    main()
