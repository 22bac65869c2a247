using System.Text;
using Lutra.Gguf;

namespace Lutra.Models.Tests;

/// <summary>Writes small GGUF v3 images in memory (F32 tensors, scalar metadata) for architecture tests.</summary>
internal sealed class GgufBuilder
{
    private const int Alignment = 32;
    private readonly List<(string Key, uint Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<(string Name, long[] Shape, float[] Data)> _tensors = [];

    public GgufBuilder String(string key, string value)
    {
        _metadata.Add((key, 8, w => WriteString(w, value)));
        return this;
    }

    public GgufBuilder UInt32(string key, uint value)
    {
        _metadata.Add((key, 4, w => w.Write(value)));
        return this;
    }

    public GgufBuilder Float32(string key, float value)
    {
        _metadata.Add((key, 6, w => w.Write(value)));
        return this;
    }

    public GgufBuilder Tensor(string name, long[] shape, float[] data)
    {
        _tensors.Add((name, shape, data));
        return this;
    }

    public GgufFile Open() => GgufFile.FromBytes(Build());

    public byte[] Build()
    {
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, type, write) in _metadata)
        {
            WriteString(w, key);
            w.Write(type);
            write(w);
        }
        ulong offset = 0;
        foreach (var (name, shape, data) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            foreach (var d in shape)
                w.Write((ulong)d);
            w.Write(0u); // F32
            w.Write(offset);
            offset += Align((ulong)data.Length * 4);
        }
        Pad(w);
        foreach (var (_, _, data) in _tensors)
        {
            foreach (var v in data)
                w.Write(v);
            Pad(w);
        }
        w.Flush();
        return stream.ToArray();
    }

    private static ulong Align(ulong n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w)
    {
        while (w.BaseStream.Position % Alignment != 0)
            w.Write((byte)0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}
