using Lutra.Core.Quants;

namespace Lutra.Gguf.Tests;

public sealed unsafe class ReleaseMappedPagesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-gguf-release-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Pattern(int length) => Enumerable.Range(0, length).Select(i => (byte)(i * 7 + 3)).ToArray();

    private static GgufWriter Writer(byte[] data)
    {
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.From("llama"));
        w.AddTensor("big", [data.Length], GgmlType.I8, data);
        return w;
    }

    [Fact]
    public void Released_pages_read_back_the_same_bytes_from_the_file()
    {
        var data = Pattern(5 * Environment.SystemPageSize + 123);
        var path = Path.Combine(_dir, "m.gguf");
        Writer(data).Write(path);
        using var file = GgufFile.Open(path);
        var info = file.GetTensor("big");
        Assert.Equal(data, file.GetTensorData(info).ToArray()); // every page resident now
        var released = file.ReleaseMappedPages(file.GetTensorPointer(info), info.ByteSize);
        if (OperatingSystem.IsLinux())
        {
            // Only whole pages inside the tensor: at least 4 of its 5+ pages, never more than its bytes.
            Assert.InRange(released, 4L * Environment.SystemPageSize, info.ByteSize);
            Assert.Equal(0, released % Environment.SystemPageSize);
        }
        Assert.Equal(data, file.GetTensorData(info).ToArray());
    }

    [Fact]
    public void An_in_memory_file_keeps_its_bytes()
    {
        var data = Pattern(3 * Environment.SystemPageSize);
        using var stream = new MemoryStream();
        Writer(data).WriteTo(stream);
        using var file = GgufFile.FromBytes(stream.ToArray());
        var info = file.GetTensor("big");
        Assert.Equal(0, file.ReleaseMappedPages(file.GetTensorPointer(info), info.ByteSize));
        Assert.Equal(data, file.GetTensorData(info).ToArray());
    }

    [Fact]
    public void A_range_outside_the_map_is_rejected()
    {
        var path = Path.Combine(_dir, "small.gguf");
        Writer(Pattern(100)).Write(path);
        using var file = GgufFile.Open(path);
        var info = file.GetTensor("big");
        var p = file.GetTensorPointer(info);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReleaseMappedPages(p, file.Length));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReleaseMappedPages(p - info.DataOffset - 1, 10));
        Assert.Equal(0, file.ReleaseMappedPages(p, 100)); // less than a page: nothing to release
    }
}
