from .front.fast import main

main()
