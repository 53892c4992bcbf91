package postgres

// MigrationCount is how many migrations this binary knows, for tests that
// check the recorded schema version.
var MigrationCount = len(migrations)
