from metaconf.cli import main

raise SystemExit(main())
