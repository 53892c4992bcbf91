package sqlite

import "fmt"

// SetMaxPageCount caps the database's size, in pages, as a full disk
// would: writes past it fail with SQLITE_FULL.
func SetMaxPageCount(db *DB, pages int) error {
	_, err := db.db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	return err
}

// PageCount is the database's size in pages.
func PageCount(db *DB) (int, error) {
	var n int
	err := db.db.QueryRow("PRAGMA page_count").Scan(&n)
	return n, err
}
