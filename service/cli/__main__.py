"""``python -m service.cli``: the `framecast` command."""

from service.cli.main import main

raise SystemExit(main())
