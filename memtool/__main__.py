from memtool.entry import main

main()
