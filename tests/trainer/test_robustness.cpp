// filled by later commits
