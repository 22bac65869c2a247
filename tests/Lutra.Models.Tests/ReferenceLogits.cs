using System.Globalization;
using System.Runtime.InteropServices;
using Lutra.Models;
using Lutra.Tests;

namespace Lutra.Models.Tests;

/// <summary>llama.cpp's teacher-forced logits (shared/reference/logits) and how far ours are from them.</summary>
internal static class ReferenceLogits
{
    public static int[] Tokens(string stem) => ParseIds(File.ReadAllText(SharedData.Require($"reference/logits/{stem}.tokens.txt")));

    public static int[] ParseIds(string text) =>
        text.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    public static float[] Read(string fileName) =>
        MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(SharedData.Require($"reference/logits/{fileName}"))).ToArray();

    /// <summary>All-position logits of one batch, as llama.cpp's reference run evaluated them.</summary>
    public static float[] Evaluate(string modelFile, int[] tokens, InferenceOptions options, KernelOptions? kernels = null)
    {
        using var model = Transformer.Load(SharedData.Model(modelFile), kernels);
        using var state = model.CreateState(options with { ContextSize = Math.Max(512, tokens.Length), BatchSize = tokens.Length });
        var logits = new float[tokens.Length * model.VocabSize];
        model.Forward(state, tokens, 0, allLogits: true, logits);
        return logits;
    }

    private static double Margin(ReadOnlySpan<float> row)
    {
        float first = float.NegativeInfinity, second = float.NegativeInfinity;
        foreach (var v in row)
        {
            if (v > first)
            {
                second = first;
                first = v;
            }
            else if (v > second)
            {
                second = v;
            }
        }
        return first - second;
    }

    public static Comparison Compare(float[] ours, float[] reference, int vocab)
    {
        Assert.Equal(reference.Length, ours.Length);
        double max = 0, sum = 0;
        var agree = 0;
        var decisive = 0;
        var rows = reference.Length / vocab;
        for (var r = 0; r < rows; r++)
        {
            var a = ours.AsSpan(r * vocab, vocab);
            var b = reference.AsSpan(r * vocab, vocab);
            for (var i = 0; i < vocab; i++)
            {
                var d = Math.Abs((double)a[i] - b[i]);
                Assert.False(double.IsNaN(d), $"NaN logit at row {r}, token {i}");
                max = Math.Max(max, d);
                sum += d;
            }
            if (ArgMax(a) == ArgMax(b))
                agree++;
        }
        // A disagreement is decisive when llama.cpp's own top-1 beats its runner-up by more than the largest
        // difference between the two engines anywhere: then rounding noise cannot explain it.
        for (var r = 0; r < rows; r++)
        {
            var a = ours.AsSpan(r * vocab, vocab);
            var b = reference.AsSpan(r * vocab, vocab);
            if (ArgMax(a) != ArgMax(b) && Margin(b) > max)
                decisive++;
        }
        var c = new Comparison(max, sum / reference.Length, (double)agree / rows, decisive);
        TestContext.Current.TestOutputHelper?.WriteLine(c.ToString());
        return c;
    }

    public static int ArgMax(ReadOnlySpan<float> v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++)
        {
            if (v[i] > v[best])
                best = i;
        }
        return best;
    }

    /// <summary>Skips when the model uses a weight type whose reference kernels are not in this build yet.</summary>
    public static void RequireKernels(string modelFile)
    {
        using var file = Lutra.Gguf.GgufFile.Open(SharedData.Model(modelFile));
        foreach (var t in file.Tensors.Select(t => t.Type).Distinct())
        {
            try
            {
                var info = Lutra.Core.Quants.QuantTypes.Get(t);
                var n = info.BlockSize;
                Lutra.Core.Quants.QuantReference.Dequantize(t, new byte[info.BlockBytes], new float[n]);
                var act = Lutra.Core.Quants.QuantReference.ActivationType(t);
                var actBytes = new byte[Lutra.Core.Quants.QuantTypes.Get(act).RowBytes(n == 1 ? 256 : n)];
                Lutra.Core.Quants.QuantReference.QuantizeActivations(act, new float[n == 1 ? 256 : n], actBytes);
            }
            catch (NotSupportedException e)
            {
                Assert.Skip($"{modelFile}: {e.Message} (the quant reference kernels are not in this build)");
            }
        }
    }
}

internal readonly record struct Comparison(double MaxAbs, double MeanAbs, double Top1Agreement, int DecisiveDisagreements)
{
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"max abs {MaxAbs:G4}, mean abs {MeanAbs:G4}, top-1 agreement {Top1Agreement:P1}, disagreements beyond the noise {DecisiveDisagreements}");
}
