using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Models.Tuning;
using Lutra.Tests;

namespace Lutra.Models.Tests.Tuning;

/// <summary>The real tuner on a real model file: decisions are cached under the file's identity.</summary>
public sealed class TunedLoadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-tuned-load-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_second_load_uses_the_cache_until_the_file_changes()
    {
        if (KernelTable.RepackingKernels(GgmlType.TQ2_0, KernelIsa.Selected).Count == 0)
            Assert.Skip($"no repacking kernel for TQ2_0 at {KernelIsa.Selected}: nothing to tune");
        var model = Path.Combine(_dir, "model.gguf");
        File.Copy(SharedData.Model("tiny-synth-TQ2_0.gguf"), model);
        var options = new KernelOptions { Preference = KernelPreference.Auto, CachePath = Path.Combine(_dir, "tune.json") };

        using (var first = Transformer.Load(model, options))
            Assert.All(first.Kernels.Choices, c => Assert.Equal(KernelChoiceSource.Tuned, c.Source));
        KernelSelection second;
        using (var again = Transformer.Load(model, options))
            second = again.Kernels;
        Assert.All(second.Choices, c => Assert.Equal(KernelChoiceSource.Cached, c.Source));
        Assert.Equal(TimeSpan.Zero, second.Tuning);
        Assert.Contains(Path.GetFullPath(model), File.ReadAllText(options.CachePath!), StringComparison.Ordinal);

        File.SetLastWriteTimeUtc(model, File.GetLastWriteTimeUtc(model).AddMinutes(1));
        using var touched = Transformer.Load(model, options);
        Assert.All(touched.Kernels.Choices, c => Assert.Equal(KernelChoiceSource.Tuned, c.Source));
    }
}
