import sys

from ptlib.course.study.runner import main

sys.exit(main())
