import sys

from theano_det.cli import main

sys.exit(main())
