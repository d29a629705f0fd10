//go:build unix

package embedded

import (
	"os"
	"syscall"
)

// diskFree is the space free for an unprivileged writer on the filesystem holding dir.
func diskFree(dir string) (int64, bool) {
	_ = os.MkdirAll(dir, 0o755)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, false
	}
	return int64(fs.Bavail) * int64(fs.Bsize), true
}
