from ptlib.course.runner import main

raise SystemExit(main())
