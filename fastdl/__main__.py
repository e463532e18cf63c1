from fastdl.cli import main

raise SystemExit(main())
