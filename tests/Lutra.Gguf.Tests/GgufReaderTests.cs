using Lutra.Core.Quants;
using Lutra.Tests;

namespace Lutra.Gguf.Tests;

public class GgufReaderTests
{
    public static TheoryData<string> SharedGgufFiles()
    {
        var data = new TheoryData<string>();
        var root = SharedData.Directory;
        if (root is null)
        {
            data.Add("(shared missing)");
            return data;
        }
        foreach (var dir in new[] { "models", "tokenizer" })
            foreach (var f in Directory.EnumerateFiles(Path.Combine(root, dir), "*.gguf").Order())
                data.Add(Path.Combine(dir, Path.GetFileName(f)));
        return data;
    }

    [Theory]
    [MemberData(nameof(SharedGgufFiles))]
    public void Every_shared_file_opens_and_its_tensors_lie_inside_it(string relative)
    {
        var path = SharedData.Require(relative);
        using var file = GgufFile.Open(path);
        Assert.InRange(file.Version, 2u, 3u);
        Assert.NotEmpty(file.Metadata);
        foreach (var t in file.Tensors)
        {
            Assert.True(t.DataOffset >= file.DataStart);
            Assert.True(t.DataOffset + t.ByteSize <= file.Length);
            Assert.Equal(0, t.DataOffset % file.Alignment);
        }
    }

    [Fact]
    public void Stories260K_has_the_documented_hyperparameters()
    {
        using var file = GgufFile.Open(SharedData.Model("stories260K.gguf"));
        var md = file.Metadata;
        Assert.Equal("llama", md.GetString("general.architecture"));
        Assert.Equal(64u, md.GetUInt32("llama.embedding_length"));
        Assert.Equal(5u, md.GetUInt32("llama.block_count"));
        Assert.Equal(512, md.GetStringArray("tokenizer.ggml.tokens")!.Length);
        var embd = file.GetTensor("token_embd.weight");
        Assert.Equal(new long[] { 64, 512 }, embd.Shape);
        Assert.Equal(GgmlType.F32, embd.Type);
        Assert.Equal(64 * 512 * 4, file.GetTensorData(embd).Length);
    }
}
