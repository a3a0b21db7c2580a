module tidemark.dev/hack/pause

go 1.25
