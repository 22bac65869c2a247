using System.Runtime.InteropServices;
using System.Text.Json;
using Lutra.Core.Quants;
using Lutra.Gguf;
using Lutra.Tests;

namespace Lutra.Core.Tests.Quants;

/// <summary>One entry of reference/dequant/manifest.json: a tensor's first rows as llama.cpp dequantized them.</summary>
public sealed record DequantCase(string File, string Model, string Tensor, GgmlType Type, int Rows, int Columns)
{
    public override string ToString() => File;
}

/// <summary>Reads llama.cpp's golden files under ../shared/reference/dequant (skipping when shared/ is absent).</summary>
internal static class ReferenceData
{
    public const string ManifestPath = "reference/dequant/manifest.json";

    public static IReadOnlyList<DequantCase> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SharedData.Require(ManifestPath)));
        var cases = new List<DequantCase>();
        foreach (var f in doc.RootElement.GetProperty("files").EnumerateArray())
        {
            var typeName = f.GetProperty("ggml_type").GetString()!;
            var info = QuantTypes.TryGet(typeName) ?? throw new InvalidDataException($"manifest names unknown type {typeName}");
            cases.Add(new DequantCase(
                f.GetProperty("file").GetString()!,
                f.GetProperty("model").GetString()!,
                f.GetProperty("tensor").GetString()!,
                info.Type,
                f.GetProperty("rows_saved").GetInt32(),
                f.GetProperty("ne")[0].GetInt32()));
        }
        return cases;
    }

    public static DequantCase Case(string file) =>
        Cases().SingleOrDefault(c => c.File == file) ?? throw new InvalidDataException($"{file} is not in {ManifestPath}");

    public static float[] ReadF32(string fileName) =>
        MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(SharedData.Require("reference/dequant/" + fileName))).ToArray();

    /// <summary>The F32 source rows that the quantized file was made from.</summary>
    public static float[] Source(DequantCase c)
    {
        var all = ReadF32($"tiny-synth-F32.{c.Tensor}.f32");
        return all[..(c.Rows * c.Columns)];
    }

    /// <summary>The GGUF's stored bytes of the saved rows.</summary>
    public static byte[] QuantizedRows(DequantCase c)
    {
        using var gguf = GgufFile.Open(SharedData.Model(c.Model));
        var tensor = gguf.GetTensor(c.Tensor);
        if (tensor.Type != c.Type)
            throw new InvalidDataException($"{c.Model}:{c.Tensor} is {tensor.Type}, the manifest says {c.Type}");
        return gguf.GetTensorData(tensor)[..checked((int)(tensor.RowBytes * c.Rows))].ToArray();
    }
}
