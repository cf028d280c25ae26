"""One screen per file: the four panes (board, conversations, keys, chat) and dialogs."""
