// Output positions of the web terminal (ptyproto's, through the server's
// TerminalEvent.attached and the data channel's answer line): every byte
// of a session's output has an offset, and the screen writes each offset
// once, whichever path (the server's relay or the direct data channel)
// brings it first. Both paths carry one contiguous stream each, from the
// position they attached at, so taking "what is beyond the screen's
// position" from each chunk loses and repeats nothing.

export interface Position {
  instance: string;
  offset: number;
}

// A Stream is one path's output: where its next byte sits.
export class Stream {
  constructor(
    public instance: string,
    public offset: number,
  ) {}
}

// Screen is what the terminal has written so far.
export class Screen {
  instance = "";
  offset = 0;

  position(): Position {
    return { instance: this.instance, offset: this.offset };
  }

  // reset starts the screen over at a replay (a session's scrollback).
  reset(instance: string, offset: number): void {
    this.instance = instance;
    this.offset = offset;
  }

  // take returns the part of a chunk that stream s brought which the screen
  // does not have yet (null for none), and moves s past the chunk.
  take(s: Stream, data: Uint8Array): Uint8Array | null {
    const start = s.offset;
    s.offset += data.length;
    if (s.instance !== this.instance) return null; // an old session's output
    const end = start + data.length;
    if (end <= this.offset) return null;
    // A stream never starts beyond the screen (it attached at or before
    // it); if it did, the gap is lost output, and writing on beats
    // stopping.
    const from = Math.max(0, this.offset - start);
    this.offset = end;
    return from === 0 ? data : data.subarray(from);
  }
}
