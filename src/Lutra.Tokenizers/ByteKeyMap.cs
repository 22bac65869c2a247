namespace Lutra.Tokenizers;

/// <summary>
/// An immutable hash map from byte strings to ints, looked up by span so the hot tokenizer loops never
/// allocate a key. Keys live back to back in one array; the table is open-addressed with linear probing.
/// The first value added for a key wins when a key is added twice (callers decide which that is).
/// </summary>
internal sealed class ByteKeyMap
{
    private readonly byte[] _keyBytes;
    private readonly int[] _keyStart;
    private readonly int[] _keyLength;
    private readonly int[] _values;
    private readonly int[] _slots; // entry index + 1; 0 = empty
    private readonly int _mask;

    public int Count => _values.Length;

    private ByteKeyMap(byte[] keyBytes, int[] keyStart, int[] keyLength, int[] values, int[] slots)
    {
        _keyBytes = keyBytes;
        _keyStart = keyStart;
        _keyLength = keyLength;
        _values = values;
        _slots = slots;
        _mask = slots.Length - 1;
    }

    public bool TryGetValue(ReadOnlySpan<byte> key, out int value)
    {
        var slot = Hash(key) & _mask;
        while (true)
        {
            var entry = _slots[slot] - 1;
            if (entry < 0)
            {
                value = -1;
                return false;
            }
            if (_keyBytes.AsSpan(_keyStart[entry], _keyLength[entry]).SequenceEqual(key))
            {
                value = _values[entry];
                return true;
            }
            slot = (slot + 1) & _mask;
        }
    }

    public int GetValueOrDefault(ReadOnlySpan<byte> key, int missing) => TryGetValue(key, out var v) ? v : missing;

    private static int Hash(ReadOnlySpan<byte> key)
    {
        var h = new HashCode();
        h.AddBytes(key);
        return h.ToHashCode();
    }

    internal sealed class Builder
    {
        private readonly List<byte> _bytes = [];
        private readonly List<int> _start = [];
        private readonly List<int> _length = [];
        private readonly List<int> _values = [];

        public void Add(ReadOnlySpan<byte> key, int value)
        {
            _start.Add(_bytes.Count);
            _length.Add(key.Length);
            _values.Add(value);
            foreach (var b in key)
                _bytes.Add(b);
        }

        public ByteKeyMap Build()
        {
            var capacity = 16;
            while (capacity < _values.Count * 2)
                capacity <<= 1;
            var slots = new int[capacity];
            var bytes = _bytes.ToArray();
            var keep = new List<int>(_values.Count);
            var mask = capacity - 1;
            for (var e = 0; e < _values.Count; e++)
            {
                var key = bytes.AsSpan(_start[e], _length[e]);
                var slot = Hash(key) & mask;
                var duplicate = false;
                while (slots[slot] != 0)
                {
                    var other = keep[slots[slot] - 1];
                    if (bytes.AsSpan(_start[other], _length[other]).SequenceEqual(key))
                    {
                        duplicate = true;
                        break;
                    }
                    slot = (slot + 1) & mask;
                }
                if (duplicate)
                    continue;
                keep.Add(e);
                slots[slot] = keep.Count;
            }
            return new ByteKeyMap(bytes,
                [.. keep.Select(e => _start[e])], [.. keep.Select(e => _length[e])], [.. keep.Select(e => _values[e])], slots);
        }
    }
}
