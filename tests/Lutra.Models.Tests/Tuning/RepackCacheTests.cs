using System.Buffers.Binary;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Models.Synthetic;
using Lutra.Models.Tuning;

namespace Lutra.Models.Tests.Tuning;

/// <summary>
/// The on-disk repack cache on a small synthetic Q4_0 model: a second load reads the repacked weights instead of
/// repacking them, and a stale, damaged or unwritable cache costs a repack, never different logits or an error.
/// </summary>
public sealed class RepackCacheTests : IDisposable
{
    private static readonly SyntheticShape Shape = new("tiny", "llama", 256, 512, 2, 4, 2, 320, 64, TiedOutput: false, QkvBias: false);
    private static readonly int[] Prompt = [1, 17, 200, 5, 93];

    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-repack-cache-").FullName;
    private readonly string _model;
    private readonly string _cache;

    public RepackCacheTests()
    {
        _model = Path.Combine(_dir, "model.gguf");
        _cache = Path.Combine(_dir, "cache");
        SyntheticModel.Create(Shape, GgmlType.Q4_0).Write(_model);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private KernelOptions Options(string? cache) =>
        new() { Preference = KernelPreference.Repacked, CachePath = null, RepackCacheDirectory = cache };

    private static void RequireRepacking()
    {
        if (KernelTable.RepackingKernels(GgmlType.Q4_0, KernelIsa.Selected).Count == 0)
            Assert.Skip($"no repacking kernel for Q4_0 at {KernelIsa.Selected}: nothing to cache");
    }

    private (float[] Logits, RepackCacheReport? Report, int Repacked) Run(string? cache)
    {
        using var model = Transformer.Load(_model, Options(cache));
        using var state = model.CreateState();
        model.Forward(state, Prompt, 0, allLogits: false, default);
        var repacked = model.Weights.Matrices.Distinct().Count(m => m.RepackedBytes > 0);
        return (state.LastLogits.ToArray(), model.Kernels.RepackCache, repacked);
    }

    private string CacheFile() => Assert.Single(Directory.GetFiles(_cache));

    [Fact]
    public void A_second_load_reads_every_repacked_matrix_and_computes_the_same_logits()
    {
        RequireRepacking();
        var (expected, none, repacked) = Run(null);
        Assert.Null(none);
        Assert.True(repacked > 0);

        var (first, written, _) = Run(_cache);
        Assert.Equal(0, written!.MatricesRead);
        Assert.Equal(repacked, written.MatricesWritten);
        Assert.Null(written.WriteError);
        Assert.Equal(expected, first);

        var (second, read, _) = Run(_cache);
        Assert.Equal(repacked, read!.MatricesRead);
        Assert.Equal(0, read.MatricesWritten);
        Assert.Equal(expected, second);
        Assert.Equal(written.Path, read.Path);
    }

    [Fact]
    public void Damaged_matrix_bytes_are_repacked_and_the_file_rewritten()
    {
        RequireRepacking();
        var (expected, _, repacked) = Run(_cache);
        var path = CacheFile();
        using (var file = File.Open(path, FileMode.Open, FileAccess.ReadWrite))
        {
            var header = new byte[24];
            file.ReadExactly(header);
            file.Position = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(16)) + 100; // inside the first matrix
            var b = file.ReadByte();
            file.Position--;
            file.WriteByte((byte)(b ^ 0x5A));
        }

        var (logits, report, _) = Run(_cache);
        Assert.Equal(repacked - 1, report!.MatricesRead);
        Assert.Equal(repacked, report.MatricesWritten);
        Assert.Equal(expected, logits);
        Assert.Equal(repacked, Run(_cache).Report!.MatricesRead);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    [InlineData("header")]
    [InlineData("empty")]
    public void An_unreadable_file_is_ignored_and_replaced(string damage)
    {
        RequireRepacking();
        var (expected, _, repacked) = Run(_cache);
        var path = CacheFile();
        var bytes = File.ReadAllBytes(path);
        switch (damage)
        {
            case "garbage":
                new Random(5).NextBytes(bytes);
                File.WriteAllBytes(path, bytes);
                break;
            case "truncated":
                File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
                break;
            case "header":
                bytes[40] ^= 1; // inside the key string: the header hash no longer matches
                File.WriteAllBytes(path, bytes);
                break;
            default:
                File.WriteAllBytes(path, []);
                break;
        }

        var (logits, report, _) = Run(_cache);
        Assert.Equal(0, report!.MatricesRead);
        Assert.Equal(repacked, report.MatricesWritten);
        Assert.Equal(expected, logits);
        Assert.Equal(repacked, Run(_cache).Report!.MatricesRead);
    }

    [Fact]
    public void A_changed_model_file_does_not_use_the_old_cache()
    {
        RequireRepacking();
        var (_, _, repacked) = Run(_cache);
        File.SetLastWriteTimeUtc(_model, File.GetLastWriteTimeUtc(_model).AddMinutes(1));
        var report = Run(_cache).Report!;
        Assert.Equal(0, report.MatricesRead);
        Assert.Equal(repacked, report.MatricesWritten);
        Assert.Single(Directory.GetFiles(_cache)); // replaced, not added to
    }

    [Fact]
    public void An_unwritable_cache_is_reported_and_the_model_still_runs()
    {
        RequireRepacking();
        var (expected, _, _) = Run(null);
        File.WriteAllText(_cache, "a file where the cache directory should be");
        var (logits, report, _) = Run(_cache);
        Assert.NotNull(report!.WriteError);
        Assert.Equal(0, report.MatricesWritten);
        Assert.Equal(expected, logits);
        Assert.Equal("a file where the cache directory should be", File.ReadAllText(_cache));
    }

    [Fact]
    public void Multiply_add_only_loads_keep_no_cache()
    {
        using var model = Transformer.Load(_model, Options(_cache) with { Preference = KernelPreference.Mad });
        Assert.Null(model.Kernels.RepackCache);
        Assert.False(Directory.Exists(_cache));
    }
}
