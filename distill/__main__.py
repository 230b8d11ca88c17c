"""`python -m distill ...`: the same commands as the `distill` console script."""
from distill.cli import main

if __name__ == "__main__":
    main(prog_name="python -m distill")
