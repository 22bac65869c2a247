using System.Buffers;
using System.Runtime.InteropServices;
using Lutra.Tokenizers.Unicode;

namespace Lutra.Tokenizers.Bpe;

/// <summary>
/// Byte-level BPE as llama.cpp runs it. Token texts and merges are byte-level encoded (GPT-2's byte→char table);
/// this encoder decodes them once at load, so merging works directly on the raw UTF-8 bytes of each
/// pre-tokenized piece: one symbol per byte, repeatedly merge the adjacent pair with the lowest merge rank
/// (ties → leftmost), then emit each symbol's token.
/// </summary>
internal sealed class BpeEncoder
{
    private readonly ByteKeyMap _tokensByBytes;   // raw bytes → id, for tokens whose text is byte-level encoded
    private readonly ByteKeyMap _mergeRanks;      // [left length: 2 bytes][left bytes][right bytes] → rank
    private readonly int _maxMergeLength;
    private readonly int[] _singleByteTextTokens; // token whose stored text is exactly this one byte, or -1
    private readonly PreTokenizer _preTokenizer;
    private readonly bool _ignoreMerges;

    public BpeEncoder(Vocabulary vocab, IReadOnlyList<Lutra.Gguf.GgufString> merges, PreTokenizer preTokenizer, bool ignoreMerges)
    {
        _preTokenizer = preTokenizer;
        _ignoreMerges = ignoreMerges;

        var decoded = new List<byte>();
        var tokens = new ByteKeyMap.Builder();
        _singleByteTextTokens = new int[256];
        Array.Fill(_singleByteTextTokens, -1);
        for (var id = 0; id < vocab.Count; id++)
        {
            var text = vocab.Text(id);
            if (text.Length == 1 && _singleByteTextTokens[text[0]] < 0)
                _singleByteTextTokens[text[0]] = id;
            if (ByteLevel.TryDecodeText(text, decoded))
                tokens.Add(CollectionsMarshal.AsSpan(decoded), id);
        }
        _tokensByBytes = tokens.Build();

        var ranks = new ByteKeyMap.Builder();
        var left = new List<byte>();
        var right = new List<byte>();
        var key = new List<byte>();
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var merge = merges[rank].Bytes;
            var space = merge.Length > 1 ? merge[1..].IndexOf((byte)' ') : -1;
            if (space < 0)
                continue;
            space += 1;
            if (!ByteLevel.TryDecodeText(merge[..space], left) || !ByteLevel.TryDecodeText(merge[(space + 1)..], right))
                continue;
            if (left.Count > ushort.MaxValue)
                continue;
            key.Clear();
            key.Add((byte)(left.Count & 0xFF));
            key.Add((byte)(left.Count >> 8));
            key.AddRange(left);
            key.AddRange(right);
            ranks.Add(CollectionsMarshal.AsSpan(key), rank);
            _maxMergeLength = Math.Max(_maxMergeLength, left.Count + right.Count);
        }
        _mergeRanks = ranks.Build();
    }

    internal struct Symbol
    {
        public int Start;
        public int Length;
        public int Prev;
        public int Next;
    }

    /// <summary>Per-call scratch state, so one encoder can serve several threads.</summary>
    internal sealed class Session
    {
        public readonly List<int> Codepoints = [];
        public readonly SplitText Text = new();
        public readonly List<int> Lengths = [];
        public readonly List<int> Scratch = [];
        public readonly List<byte> Normalized = [];
        public readonly List<Symbol> Symbols = [];
        public readonly PriorityQueue<(int Left, int Right, int Size), (int Rank, int Left)> Queue = new();
    }

    public void Encode(ReadOnlySpan<byte> utf8, List<int> output, Session session)
    {
        var cps = session.Codepoints;
        cps.Clear();
        Utf8.DecodeCodepoints(utf8, cps);
        session.Text.Reset(cps);
        _preTokenizer.Split(session.Text, session.Lengths, session.Scratch);

        // Re-encode the code points: identical to the input for valid UTF-8, U+FFFD for invalid bytes.
        var bytes = session.Normalized;
        bytes.Clear();
        var cpIndex = 0;
        foreach (var length in session.Lengths)
        {
            var pieceStart = bytes.Count;
            for (var i = 0; i < length; i++)
                Utf8.Append(bytes, cps[cpIndex++]);
            EncodePiece(CollectionsMarshal.AsSpan(bytes)[pieceStart..], output, session);
        }
    }

    private void EncodePiece(ReadOnlySpan<byte> piece, List<int> output, Session session)
    {
        if (piece.IsEmpty)
            return;
        if (_ignoreMerges && _tokensByBytes.TryGetValue(piece, out var whole))
        {
            output.Add(whole);
            return;
        }

        var list = session.Symbols;
        list.Clear();
        for (var i = 0; i < piece.Length; i++)
            list.Add(new Symbol { Start = i, Length = 1, Prev = i - 1, Next = i + 1 == piece.Length ? -1 : i + 1 });
        var syms = CollectionsMarshal.AsSpan(list);
        var queue = session.Queue;
        queue.Clear();
        for (var i = 1; i < syms.Length; i++)
            TryAddPair(piece, syms, i - 1, i, queue);

        while (queue.TryDequeue(out var pair, out _))
        {
            ref var left = ref syms[pair.Left];
            ref var right = ref syms[pair.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != pair.Size)
                continue; // stale: one side has merged since this pair was queued
            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0)
                syms[right.Next].Prev = pair.Left;
            TryAddPair(piece, syms, left.Prev, pair.Left, queue);
            TryAddPair(piece, syms, pair.Left, left.Next, queue);
        }

        Span<byte> encoded = stackalloc byte[4];
        for (var i = 0; i != -1; i = syms[i].Next)
        {
            var symbol = piece.Slice(syms[i].Start, syms[i].Length);
            if (_tokensByBytes.TryGetValue(symbol, out var id))
            {
                output.Add(id);
                continue;
            }
            // A merge produced a string the vocabulary lacks: llama.cpp emits, per byte of the symbol's
            // byte-level text, the token whose text is that single byte, and drops bytes without one.
            foreach (var b in symbol)
            {
                var n = Utf8.Encode(ByteLevel.ByteToCodepoint[b], encoded);
                for (var k = 0; k < n; k++)
                {
                    var t = _singleByteTextTokens[encoded[k]];
                    if (t >= 0)
                        output.Add(t);
                }
            }
        }
    }

    private void TryAddPair(ReadOnlySpan<byte> piece, Span<Symbol> syms, int left, int right,
        PriorityQueue<(int, int, int), (int, int)> queue)
    {
        if (left < 0 || right < 0)
            return;
        var leftLength = syms[left].Length;
        var size = leftLength + syms[right].Length;
        if (size > _maxMergeLength)
            return;
        var keyLength = size + 2;
        byte[]? rented = null;
        var key = keyLength <= 256 ? stackalloc byte[keyLength] : (rented = ArrayPool<byte>.Shared.Rent(keyLength)).AsSpan(0, keyLength);
        key[0] = (byte)(leftLength & 0xFF);
        key[1] = (byte)(leftLength >> 8);
        piece.Slice(syms[left].Start, size).CopyTo(key[2..]);
        var found = _mergeRanks.TryGetValue(key, out var rank);
        if (rented is not null)
            ArrayPool<byte>.Shared.Return(rented);
        if (found)
            queue.Enqueue((left, right, size), (rank, left));
    }
}
