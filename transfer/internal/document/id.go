package document

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"unsafe"

	"github.com/logpipe/logpipe/common/record"
)

// idVersion and idVersionGen start every hashed input, so that a later
// change of the inputs cannot give an _id that an earlier one gave.
const (
	idVersion    = "logpipe-line-1" // records without log.file.generation
	idVersionGen = "logpipe-line-2" // records with one
)

// AppendRecordID appends the _id of record r read at src.
//
// A record that carries its source position (record.HasPosition) gets an
// _id derived from it alone, so that a line the agent sent twice (after a
// crash between Kafka's acknowledgement and the next save of its offsets)
// becomes one document: the second create answers 409. The _id is the
// base64url encoding, without padding, of the first 20 bytes (160 bits) of
// the SHA-256 of these inputs, each written as its length in 4 bytes big
// endian followed by its bytes. For a record with log.file.generation:
//
//	"logpipe-line-2", agent.name, log.file.generation,
//	log.file.fingerprint, log.offset (decimal), message
//
// and for one without (from agents that predate generations; documents
// already indexed keep their _id):
//
//	"logpipe-line-1", agent.name, log.file.device_id, log.file.inode,
//	log.file.fingerprint, log.offset (decimal), message
//
// The generation is chosen at random by the agent whenever a file
// generation starts (a new file, a new file on a reused inode, a
// truncation) and kept across its restarts, so a line of a file truncated
// and written again with the same first lines, or of a new file on a
// reused inode, gets another _id than the line at the same offset before;
// device and inode are left out, so that a file whose device number
// changed keeps its lines' _ids. Without a generation, the fingerprint (it
// covers the file's first bytes before the line, see
// record.FingerprintSize) is what tells such files apart, except for lines
// before which the files' first bytes are the same (a first line, always).
// The message covers what the fingerprint cannot: a line at an offset past
// the first 1 KiB of a file rewritten with the same first KiB. Two lines
// therefore get the same _id only when the same agent read the same bytes
// at the same offset of the same file generation (or, without one, of
// files with the same device, inode and first bytes): then they are the
// same line, or a rewrite that cannot be told from it. The inputs leave out
// what may differ between the first send and a resend: @timestamp (the
// time of reading), job, labels, host and path (a file renamed meanwhile).
//
// Every other record keeps "<topic>-<partition>-<offset>" (Source.AppendID).
func AppendRecordID(dst []byte, r *record.Record, src Source) []byte {
	if !r.HasPosition() {
		return src.AppendID(dst)
	}
	var num [20]byte
	offset := string(strconv.AppendInt(num[:0], r.Log.Offset, 10))
	h := sha256.New()
	write := func(in string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(in)))
		h.Write(n[:])
		h.Write(unsafe.Slice(unsafe.StringData(in), len(in))) // read only: no copy
	}
	if f := &r.Log.File; f.Generation != "" {
		for _, in := range [...]string{idVersionGen, r.Agent.Name, f.Generation, f.Fingerprint, offset, r.Message} {
			write(in)
		}
	} else {
		for _, in := range [...]string{idVersion, r.Agent.Name, f.DeviceID, f.Inode, f.Fingerprint, offset, r.Message} {
			write(in)
		}
	}
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.AppendEncode(dst, h.Sum(sum[:0])[:20])
}
