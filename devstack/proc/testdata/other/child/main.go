// Command child is a program with the same base name as testdata/child, for
// package proc's build tests.
package main

import "fmt"

func main() { fmt.Println("the other child") }
