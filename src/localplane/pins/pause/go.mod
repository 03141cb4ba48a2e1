// The pod sandbox ("pause") program of the local node's pause image: no dependencies.
module localplane/pause

go 1.26.0
