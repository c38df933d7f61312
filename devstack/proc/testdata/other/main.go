// Command other is a second program for package proc's build tests.
package main

func main() {}
