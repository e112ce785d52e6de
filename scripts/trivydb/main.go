// trivydb writes a bbolt database (the format of Trivy's trivy.db) from JSON
// lines on stdin or in a file, one entry a line:
//
//	{"bucket": ["debian 11", "openssl"], "key": "CVE-2024-0727", "value": {...}}
//
// "bucket" is the path of nested buckets (created as needed), "key" the key in
// the innermost one and "value" any JSON value, stored as its compact JSON.
// A later line with the same bucket path and key replaces the earlier value.
//
// Usage: trivydb OUT.db [INPUT.jsonl]   (OUT.db is replaced if it exists)
//
// Build (GOPATH mode, Debian's golang-go and golang-github-coreos-bbolt-dev):
//
//	GO111MODULE=off GOPATH=$PWD/gopath:/usr/share/gocode go build -o trivydb main.go
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

type entry struct {
	Bucket []string        `json:"bucket"`
	Key    string          `json:"key"`
	Value  json.RawMessage `json:"value"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "trivydb: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fail("usage: trivydb OUT.db [INPUT.jsonl]")
	}
	var in io.Reader = os.Stdin
	if len(os.Args) == 3 && os.Args[2] != "-" {
		f, err := os.Open(os.Args[2])
		if err != nil {
			fail("%v", err)
		}
		defer f.Close()
		in = f
	}
	out := os.Args[1]
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		fail("%v", err)
	}
	db, err := bolt.Open(out, 0o644, nil)
	if err != nil {
		fail("open %s: %v", out, err)
	}
	n := 0
	err = db.Update(func(tx *bolt.Tx) error {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for line := 1; sc.Scan(); line++ {
			text := bytes.TrimSpace(sc.Bytes())
			if len(text) == 0 {
				continue
			}
			var e entry
			if err := json.Unmarshal(text, &e); err != nil {
				return fmt.Errorf("line %d: %v", line, err)
			}
			if len(e.Bucket) == 0 || e.Key == "" || len(e.Value) == 0 {
				return fmt.Errorf("line %d: need a bucket path, a key and a value", line)
			}
			b, err := tx.CreateBucketIfNotExists([]byte(e.Bucket[0]))
			for _, name := range e.Bucket[1:] {
				if err != nil {
					break
				}
				b, err = b.CreateBucketIfNotExists([]byte(name))
			}
			if err != nil {
				return fmt.Errorf("line %d: bucket %q: %v", line, e.Bucket, err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, e.Value); err != nil {
				return fmt.Errorf("line %d: value: %v", line, err)
			}
			if err := b.Put([]byte(e.Key), compact.Bytes()); err != nil {
				return fmt.Errorf("line %d: put: %v", line, err)
			}
			n++
		}
		return sc.Err()
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		fail("%v", err)
	}
	fmt.Fprintf(os.Stderr, "trivydb: wrote %d entries to %s\n", n, out)
}
