using Lutra.Tokenizers.Unicode;

namespace Lutra.Tokenizers.Spm;

/// <summary>
/// SentencePiece BPE as llama.cpp runs it: start from UTF-8 characters, repeatedly merge the adjacent pair whose
/// concatenation is the highest-scoring vocabulary token (ties → leftmost), then emit each symbol's token or,
/// for a character the vocabulary lacks, its bytes as &lt;0xHH&gt; tokens.
/// </summary>
internal sealed class SpmEncoder
{
    private readonly Vocabulary _vocab;
    private readonly int[] _byteTokens;

    public SpmEncoder(Vocabulary vocab)
    {
        _vocab = vocab;
        _byteTokens = new int[256];
        Span<byte> name = stackalloc byte[6];
        for (var b = 0; b < 256; b++)
        {
            "<0x"u8.CopyTo(name);
            name[3] = (byte)"0123456789ABCDEF"[b >> 4];
            name[4] = (byte)"0123456789ABCDEF"[b & 15];
            name[5] = (byte)'>';
            if (!vocab.TryGetId(name, out var id) && !vocab.TryGetId([(byte)b], out id))
                id = -1;
            _byteTokens[b] = id;
        }
    }

    /// <summary>The token standing for one raw byte, or -1 if the vocabulary has neither &lt;0xHH&gt; nor the byte itself.</summary>
    public int ByteToken(byte b) => _byteTokens[b];

    private struct Symbol
    {
        public int Start;
        public int Length;
        public int Prev;
        public int Next;
    }

    private sealed class PairOrder : IComparer<(float Score, int Left)>
    {
        public static readonly PairOrder Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y)
        {
            var c = y.Score.CompareTo(x.Score);
            return c != 0 ? c : x.Left.CompareTo(y.Left);
        }
    }

    /// <summary>Tokenizes already-escaped text (spaces replaced by U+2581) and appends the ids.</summary>
    public void Encode(ReadOnlySpan<byte> text, List<int> output)
    {
        if (text.IsEmpty)
            return;
        var symbols = new List<Symbol>(text.Length);
        for (var offset = 0; offset < text.Length;)
        {
            var n = Math.Min(Utf8.SequenceLength(text[offset]), text.Length - offset);
            symbols.Add(new Symbol { Start = offset, Length = n, Prev = symbols.Count - 1, Next = offset + n == text.Length ? -1 : symbols.Count + 1 });
            offset += n;
        }

        var queue = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(PairOrder.Instance);
        var syms = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(symbols);
        for (var i = 1; i < syms.Length; i++)
            TryAddPair(text, syms, i - 1, i, queue);

        while (queue.TryDequeue(out var pair, out _))
        {
            ref var left = ref syms[pair.Left];
            ref var right = ref syms[pair.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != pair.Size)
                continue;
            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0)
                syms[right.Next].Prev = pair.Left;
            TryAddPair(text, syms, left.Prev, pair.Left, queue);
            TryAddPair(text, syms, pair.Left, left.Next, queue);
        }

        for (var i = 0; i != -1; i = syms[i].Next)
        {
            var piece = text.Slice(syms[i].Start, syms[i].Length);
            if (_vocab.TryGetId(piece, out var id))
            {
                output.Add(id);
                continue;
            }
            // Every merged symbol is a vocabulary token, so only single characters reach this byte fallback.
            foreach (var b in piece)
            {
                var t = _byteTokens[b];
                if (t >= 0)
                    output.Add(t);
                else if (_vocab.UnknownId >= 0)
                    output.Add(_vocab.UnknownId);
            }
        }
    }

    private void TryAddPair(ReadOnlySpan<byte> text, Span<Symbol> syms, int left, int right,
        PriorityQueue<(int, int, int), (float, int)> queue)
    {
        if (left < 0 || right < 0)
            return;
        var size = syms[left].Length + syms[right].Length;
        if (size > _vocab.MaxTokenLength)
            return;
        if (!_vocab.TryGetId(text.Slice(syms[left].Start, size), out var id))
            return;
        queue.Enqueue((left, right, size), (_vocab.Scores[id], left));
    }
}
