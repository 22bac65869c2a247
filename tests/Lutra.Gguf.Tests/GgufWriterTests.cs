using System.Security.Cryptography;
using Lutra.Core.Quants;
using Lutra.Tests;

namespace Lutra.Gguf.Tests;

public sealed class GgufWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-gguf-writer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [MemberData(nameof(GgufReaderTests.SharedGgufFiles), MemberType = typeof(GgufReaderTests))]
    public void Reading_then_writing_a_shared_file_reproduces_it_byte_for_byte(string relative)
    {
        var path = SharedData.Require(relative);
        var copy = Path.Combine(_dir, Path.GetFileName(path));
        using (var file = GgufFile.Open(path))
            GgufWriter.From(file).Write(copy);
        Assert.Equal(new FileInfo(path).Length, new FileInfo(copy).Length);
        Assert.Equal(Sha256(path), Sha256(copy));
    }

    private static string Sha256(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(s));
    }

    /// <summary>A writer with every metadata type, nested arrays and three tensors fed three ways.</summary>
    private static (GgufWriter Writer, Dictionary<string, byte[]> Data) Sample(uint? alignment = null)
    {
        var w = new GgufWriter();
        var md = w.Metadata;
        md.Set("general.architecture", GgufValue.From("llama"));
        if (alignment is uint a)
            md.Set(GgufFile.AlignmentKey, GgufValue.From(a));
        md.Set("u8", new GgufValue(GgufValueType.UInt8, (byte)200));
        md.Set("i8", new GgufValue(GgufValueType.Int8, (sbyte)-5));
        md.Set("u16", new GgufValue(GgufValueType.UInt16, (ushort)65000));
        md.Set("i16", new GgufValue(GgufValueType.Int16, (short)-300));
        md.Set("u32", GgufValue.From(4_000_000_000u));
        md.Set("i32", GgufValue.From(-7));
        md.Set("f32", GgufValue.From(float.NaN));
        md.Set("bool", GgufValue.From(true));
        md.Set("u64", GgufValue.From(ulong.MaxValue));
        md.Set("i64", GgufValue.From(long.MinValue));
        md.Set("f64", GgufValue.From(Math.PI));
        md.Set("raw.string", new GgufValue(GgufValueType.String, new GgufString([0xFF, 0x00, 0x41])));
        md.Set("tokens", GgufValue.FromArray(["<unk>", "", "▁hello"]));
        md.Set("scores", GgufValue.FromArray([0.5f, -1f]));
        md.Set("bools", new GgufValue(GgufValueType.Array, new[] { true, false }, GgufValueType.Bool));
        md.Set("empty", new GgufValue(GgufValueType.Array, Array.Empty<long>(), GgufValueType.Int64));
        md.Set("nested", new GgufValue(GgufValueType.Array, new[]
        {
            GgufValue.FromArray([1, 2, 3]),
            new GgufValue(GgufValueType.Array, new[] { GgufValue.FromArray(["x"]) }, GgufValueType.Array),
        }, GgufValueType.Array));

        var rng = new Random(7);
        var data = new Dictionary<string, byte[]>
        {
            ["a.f32"] = RandomBytes(rng, 5 * 3 * 4),
            ["b.q4_0"] = RandomBytes(rng, 64 / 32 * 18 * 2),
            ["c.q8_0"] = RandomBytes(rng, 32 / 32 * 34),
            ["d.empty"] = [],
        };
        w.AddTensor("a.f32", [5, 3], GgmlType.F32, data["a.f32"]);
        w.AddTensor("b.q4_0", [64, 2], GgmlType.Q4_0, new MemoryStream(data["b.q4_0"]));
        w.AddTensor("c.q8_0", [32], GgmlType.Q8_0, s =>
        {
            s.Write(data["c.q8_0"].AsSpan(0, 10));
            s.Write(data["c.q8_0"].AsSpan(10));
        });
        w.AddTensor("d.empty", [32, 0], GgmlType.Q4_0, ReadOnlyMemory<byte>.Empty);
        return (w, data);
    }

    private static byte[] RandomBytes(Random rng, int n)
    {
        var b = new byte[n];
        rng.NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(null)]
    [InlineData(64u)]
    [InlineData(1u)]
    public void A_written_file_reads_back_with_the_same_metadata_tensors_and_layout(uint? alignment)
    {
        var (writer, data) = Sample(alignment);
        var path = Path.Combine(_dir, "sample.gguf");
        writer.Write(path);
        var bytes = File.ReadAllBytes(path);
        using var f = GgufFile.FromBytes(bytes);

        Assert.Equal(3u, f.Version);
        var align = alignment ?? 32;
        Assert.Equal(align, f.Alignment);
        Assert.Equal(writer.Metadata.Keys, f.Metadata.Keys);
        foreach (var (key, value) in writer.Metadata)
            AssertSameValue(value, f.Metadata.Get(key)!);

        // Offsets are the running sum of sizes padded to the alignment, in info order, with zero padding.
        Assert.Equal(0, f.DataStart % align);
        Assert.All(bytes.AsSpan((int)f.HeaderLength..(int)f.DataStart).ToArray(), b => Assert.Equal(0, b));
        ulong expected = 0;
        foreach (var t in f.Tensors)
        {
            Assert.Equal(expected, t.Offset);
            Assert.Equal(data[t.Name], f.GetTensorData(t).ToArray());
            var paddedEnd = t.DataOffset + (long)GgufHeaderReader.AlignUp(t.ByteSize, align);
            Assert.All(bytes[(int)(t.DataOffset + t.ByteSize)..(int)paddedEnd], b => Assert.Equal(0, b));
            expected += (ulong)GgufHeaderReader.AlignUp(t.ByteSize, align);
        }
        Assert.Equal(f.DataStart + (long)expected, bytes.Length);
    }

    private static void AssertSameValue(GgufValue expected, GgufValue actual)
    {
        Assert.Equal(expected.Type, actual.Type);
        if (!expected.IsArray)
        {
            if (expected.Value is float fe)
                Assert.Equal(BitConverter.SingleToUInt32Bits(fe), BitConverter.SingleToUInt32Bits((float)actual.Value));
            else
                Assert.Equal(expected.Value, actual.Value);
            return;
        }
        Assert.Equal(expected.ElementType, actual.ElementType);
        if (expected.Value is GgufValue[] inner)
        {
            var actualInner = (GgufValue[])actual.Value;
            Assert.Equal(inner.Length, actualInner.Length);
            for (var i = 0; i < inner.Length; i++)
                AssertSameValue(inner[i], actualInner[i]);
        }
        else
        {
            Assert.Equal(((Array)expected.Value).Cast<object>(), ((Array)actual.Value).Cast<object>());
        }
    }

    [Fact]
    public void A_file_without_tensors_ends_with_its_header()
    {
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.From("abc"));
        var ms = new MemoryStream();
        w.WriteTo(ms);
        Assert.Equal(24 + (8 + 20 + 4 + 8 + 3), ms.Length);
    }

    [Fact]
    public void A_failure_mid_write_leaves_no_file_and_no_temporary_file()
    {
        var w = new GgufWriter();
        w.AddTensor("ok", [8], GgmlType.F32, new byte[32]);
        w.AddTensor("boom", [1024], GgmlType.F32, s =>
        {
            s.Write(new byte[1000]);
            throw new IOException("disk on fire");
        });
        var path = Path.Combine(_dir, "model.gguf");
        var e = Assert.Throws<IOException>(() => w.Write(path));
        Assert.Equal("disk on fire", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir));
    }

    [Fact]
    public void A_failed_write_leaves_an_existing_file_untouched()
    {
        var path = Path.Combine(_dir, "model.gguf");
        File.WriteAllText(path, "previous contents");
        var w = new GgufWriter();
        w.AddTensor("short", [8], GgmlType.F32, s => s.Write(new byte[31]));
        var e = Assert.Throws<InvalidOperationException>(() => w.Write(path));
        Assert.Contains("wrote 31 bytes", e.Message, StringComparison.Ordinal);
        Assert.Equal("previous contents", File.ReadAllText(path));
        Assert.Single(Directory.EnumerateFileSystemEntries(_dir));
    }

    [Fact]
    public void A_callback_writing_too_much_is_stopped()
    {
        var w = new GgufWriter();
        w.AddTensor("long", [8], GgmlType.F32, s => s.Write(new byte[33]));
        var e = Assert.Throws<InvalidOperationException>(() => w.WriteTo(Stream.Null));
        Assert.Contains("more than its 32 bytes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_stream_that_ends_early_fails_the_write()
    {
        var w = new GgufWriter();
        w.AddTensor("t", [8], GgmlType.F32, new MemoryStream(new byte[20]));
        Assert.Throws<EndOfStreamException>(() => w.Write(Path.Combine(_dir, "x.gguf")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir));
    }

    [Fact]
    public void Rewriting_a_file_over_itself_is_safe()
    {
        var (writer, _) = Sample();
        var path = Path.Combine(_dir, "self.gguf");
        writer.Write(path);
        var original = File.ReadAllBytes(path);
        using (var f = GgufFile.Open(path))
            GgufWriter.From(f).Write(path);
        Assert.Equal(original, File.ReadAllBytes(path));
    }

    [Fact]
    public void Tensors_the_reader_would_reject_are_refused_when_added()
    {
        var w = new GgufWriter();
        w.AddTensor("a", [32], GgmlType.F32, new byte[128]);
        Assert.Throws<ArgumentException>(() => w.AddTensor("a", [32], GgmlType.F32, new byte[128]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("", [32], GgmlType.F32, new byte[128]));
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), [32], GgmlType.F32, new byte[128]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", [48], GgmlType.Q4_0, new byte[27]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("r", [32], (GgmlType)4, new byte[18]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("s", [1, 1, 1, 1, 1], GgmlType.F32, new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", [-1], GgmlType.F32, new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("u", [1L << 32, 1L << 32], GgmlType.F32, s => { }));
        Assert.Throws<ArgumentException>(() => w.AddTensor("v", [32], GgmlType.F32, new byte[127]));
        Assert.Equal(1, w.TensorCount);
    }

    [Fact]
    public void Metadata_the_reader_would_reject_is_refused_before_writing()
    {
        var path = Path.Combine(_dir, "bad.gguf");
        var w = new GgufWriter();
        w.Metadata.Set("x", new GgufValue(GgufValueType.UInt32, 5)); // an int declared UINT32
        Assert.Throws<InvalidOperationException>(() => w.Write(path));

        w = new GgufWriter();
        w.Metadata.Set(GgufFile.AlignmentKey, GgufValue.From(48u));
        Assert.Throws<InvalidOperationException>(() => w.Write(path));

        w = new GgufWriter();
        var v = GgufValue.FromArray([1]);
        for (var i = 0; i < GgufHeaderReader.MaxArrayDepth; i++)
            v = new GgufValue(GgufValueType.Array, new[] { v }, GgufValueType.Array);
        w.Metadata.Set("deep", v);
        Assert.Throws<InvalidOperationException>(() => w.Write(path));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir));
    }
}
