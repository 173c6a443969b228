from mikey.cli import main

main()
