import sys

from tango2_ros.cli import main

sys.exit(main())
