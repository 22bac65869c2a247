using Lutra.Core.Quants;

namespace Lutra.Core.Tests.Quants;

/// <summary>Dequantization and the file quantizers against llama.cpp's outputs (reference/dequant).</summary>
public sealed class GoldenDequantTests
{
    // Every file of reference/dequant/manifest.json (checked by Manifest_lists_exactly_these_files).
    public static readonly TheoryData<string> Files = new(
        from stem in new[]
        {
            "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K",
            "TQ1_0", "TQ2_0", "IQ4_NL", "IQ4_XS",
        }
        from tensor in new[] { "blk.0.ffn_gate.weight", "blk.0.attn_q.weight" }
        select $"tiny-synth-{stem}.{tensor}.f32");

    [Fact]
    public void Manifest_lists_exactly_these_files()
    {
        var listed = ReferenceData.Cases().Select(c => c.File).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(Files.Select(f => f.Data).Order(StringComparer.Ordinal).ToArray(), listed);
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Dequantize_is_bit_exact_to_llama_cpp(string file)
    {
        var c = ReferenceData.Case(file);
        var expected = ReferenceData.ReadF32(file);
        Assert.Equal(c.Rows * c.Columns, expected.Length);

        var actual = new float[expected.Length];
        QuantReference.Dequantize(c.Type, ReferenceData.QuantizedRows(c), actual);

        var mismatches = 0;
        var first = -1;
        for (var i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
            {
                mismatches++;
                if (first < 0) first = i;
            }
        }
        Assert.True(mismatches == 0,
            $"{mismatches} of {expected.Length} values differ; first at {first}: expected {(first < 0 ? 0 : expected[first])}, got {(first < 0 ? 0 : actual[first])}");
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Reference_quantizer_reproduces_llama_quantize_bytes(string file)
    {
        var c = ReferenceData.Case(file);
        var expected = ReferenceData.QuantizedRows(c);
        var actual = new byte[expected.Length];
        QuantReference.Quantize(c.Type, ReferenceData.Source(c), actual);

        var differing = 0;
        var first = -1;
        for (var i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
            {
                differing++;
                if (first < 0) first = i;
            }
        }
        var blockBytes = QuantTypes.Get(c.Type).BlockBytes;
        Assert.True(differing == 0,
            $"{differing} of {expected.Length} bytes differ; first at byte {first} (block {first / blockBytes}, offset {first % blockBytes})");
    }
}
