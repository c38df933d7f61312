// Package deploy holds the tests of the production packaging: the
// docker-compose.yml, the Dockerfile and the files in configs/ are checked
// against the binaries' real flags, metrics and config formats.
package deploy
