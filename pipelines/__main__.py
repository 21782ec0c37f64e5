import sys

from .budget import process_started
from .cli import main

sys.exit(main(started=process_started()))  # a preset's --time-limit counts from the start of the process
