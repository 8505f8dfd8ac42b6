//go:build e2e

package goinspect

// The end-to-end build also runs the tests that fetch from the module
// proxy (needModuleProxy).
func init() { moduleProxyTests = true }
