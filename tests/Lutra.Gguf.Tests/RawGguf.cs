using System.Text;

namespace Lutra.Gguf.Tests;

/// <summary>
/// Emits GGUF bytes field by field with no validation, so tests can build exactly the malformed file
/// they need (the writer refuses to produce them).
/// </summary>
internal sealed class RawGguf
{
    private readonly MemoryStream _stream = new();
    private readonly BinaryWriter _w;

    public RawGguf() => _w = new BinaryWriter(_stream);

    public long Position => _stream.Position;

    public static RawGguf Header(long nTensors, long nKv, uint version = 3) =>
        new RawGguf().U32(GgufFile.Magic).U32(version).I64(nTensors).I64(nKv);

    public RawGguf U8(byte v) { _w.Write(v); return this; }
    public RawGguf U32(uint v) { _w.Write(v); return this; }
    public RawGguf U64(ulong v) { _w.Write(v); return this; }
    public RawGguf I64(long v) { _w.Write(v); return this; }
    public RawGguf Bytes(ReadOnlySpan<byte> v) { _w.Write(v); return this; }
    public RawGguf Zeros(int n) => Bytes(new byte[n]);

    public RawGguf Str(string s) => Str(Encoding.UTF8.GetBytes(s));
    public RawGguf Str(byte[] s) => U64((ulong)s.Length).Bytes(s);

    public RawGguf Kv(string key, GgufValueType type) => Str(key).U32((uint)type);
    public RawGguf KvU32(string key, uint v) => Kv(key, GgufValueType.UInt32).U32(v);
    public RawGguf KvString(string key, string v) => Kv(key, GgufValueType.String).Str(v);

    public RawGguf Tensor(string name, long[] ne, uint type, ulong offset)
    {
        Str(name).U32((uint)ne.Length);
        foreach (var d in ne)
            I64(d);
        return U32(type).U64(offset);
    }

    public RawGguf PadTo(int alignment) => Zeros((int)((alignment - _stream.Position % alignment) % alignment));

    public byte[] ToArray()
    {
        _w.Flush();
        return _stream.ToArray();
    }
}
