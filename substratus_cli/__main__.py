from substratus_cli.cli import main

main()
