"""Video captioning data (issue 13, in progress): a seeded generator of synthetic videos whose captions
need temporal attention. The task and the captioner that use it come next; nothing here registers yet."""
