from modelserver.cli import main

main()
