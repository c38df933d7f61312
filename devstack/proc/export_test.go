package proc

// AddrIn is addrIn, for the tests of package proc_test.
var AddrIn = addrIn
