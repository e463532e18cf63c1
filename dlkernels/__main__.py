from dlkernels.cli import main

raise SystemExit(main())
