"""`python -m alyx ...` is the same as the `alyx` command."""
from alyx.cli import main

main()
